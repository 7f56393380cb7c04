"""Hardening that every request passes through: security headers, API rate limits, the
admin login's lockout and the production start-up checks. Settings are in settings.py
(``CONTENT_SECURITY_POLICY``, ``RATELIMIT_*``, ``LOGIN_LOCKOUT_*``); README.md, "Security".
"""
