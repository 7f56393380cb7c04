"""The load harness: gunicorn + a Celery worker against PostgreSQL + Redis, driven by a mixed
storefront load (``python -m benchmarks.load.run --help``)."""
