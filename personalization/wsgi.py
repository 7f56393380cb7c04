import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalization.settings")
application = get_wsgi_application()

# In production mode, refuse to serve with unapplied migrations (gunicorn and runserver).
from personalization.security.startup import pending_migrations_refuse  # noqa: E402

pending_migrations_refuse()
