"""The project's settings, unchanged, with the benchmark URLconf (the project's URLs plus a
trivial DRF endpoint). Benchmarks only: ``DJANGO_SETTINGS_MODULE=benchmarks.bench_settings``."""

from personalization.settings import *  # noqa: F403

ROOT_URLCONF = "benchmarks.bench_urls"
