"""gunicorn settings that let mdc write what each worker queued before it exits."""


def worker_exit(server, worker):
    """Runs in the worker on graceful shutdown (SIGTERM to the master, or a restart)."""
    from examples.gunicorn.app import inputs_dc, prediction_dc

    inputs_dc.close(timeout=10)
    prediction_dc.close(timeout=10)
