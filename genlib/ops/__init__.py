"""Local services the CLI supervises: the project's Prefect server and the dashboards' processes.

Nothing here imports prefect or mlflow: servers are separate processes, started and stopped by PID.
"""
