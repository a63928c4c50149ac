"""GDA Studio as a shared server: workspaces, a job queue with worker processes, budgets.

- :mod:`.config`: the server owner's settings (environment, or a TOML file): where the app keeps
  its data, how many workers, the budgets, whether server paths may be read.
- :mod:`.workspaces`: one folder per user (uploads, runs, evaluations, exports), private to it;
  publishing a run read-only to everyone; run management (rename, note, delete, zip in and out).
- :mod:`.store`: job state in SQLite (status, progress, logs for live curves, preview, result
  path), readable by the app and written by the job processes; it survives reloads and restarts.
- :mod:`.queue`: the Huey queue (SQLite backend) and its consumer; each job runs in a process of
  its own, so an out-of-memory kill ends that job only.
- :mod:`.kinds`: what each kind of job does inside its process (train, evaluate, curve, augment,
  study, prepare an uploaded dataset).

Nothing here imports streamlit: the pages call these modules.
"""
