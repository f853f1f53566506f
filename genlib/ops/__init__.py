"""Local services genlib supervises, in one package; nothing here imports prefect or mlflow (servers are
separate processes, started, asked over HTTP and stopped by PID).

- :mod:`~genlib.ops.processes`: start a process in its own group with a log, whether it still runs, stop its
  group, free ports, HTTP health checks and waiting for them; every other module here uses these.
- :mod:`~genlib.ops.project`: where a checkout keeps the services' state; the deployments' pull step.
- :mod:`~genlib.ops.prefect_server`: the Prefect server a command's flows report to (``genlib ui``, a
  temporary one); :mod:`~genlib.ops.prefect_db`: the empty database a new Prefect home starts from.
- :mod:`~genlib.ops.stack`: ``genlib stack up | down | status`` (servers, workers, deployments).
"""
