"""Static files: hashed and compressed by ``collectstatic``, served by WhiteNoise.

In production, ``manage.py collectstatic`` writes every file under a content-hashed name
with a gzip copy beside it; WhiteNoise serves those with a cache lifetime of a year (the
name changes when the content does). A process that has not collected (the test suite, a
quick ``runserver``) links the plain names instead of failing, and the static finders serve
them.
"""

from whitenoise.storage import CompressedManifestStaticFilesStorage


class StaticStorage(CompressedManifestStaticFilesStorage):
    manifest_strict = False

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:  # not collected here: link the plain name
            return name
