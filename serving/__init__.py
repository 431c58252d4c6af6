"""The serving container: answers predictions for one scikit-learn model over HTTP (`python -m serving`).

It never imports Django; the portal starts it with the environment described in serving/config.py.
"""
