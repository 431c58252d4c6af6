"""The `kubernetes` runtime: endpoints as Deployments, Services and autoscalers in one namespace."""
