"""Run code that reads uploaded model artifacts in a throwaway process that holds no secrets.

Loading a model file can run code (a pickle always does; a skops file does for the types an admin
trusted), so the portal never loads one itself. `client.run` hands the job to a warm sandbox
server (`server.py`, started on demand with a scrubbed environment and no Django), which forks a
fresh process per job: its own session and working folder, no network where the kernel allows
it, and limits on memory, CPU time, file size and wall time. The job answers JSON in its folder;
a crash or a limit becomes an error that says which limit was hit.
"""
