"""Staff-only screens and admin API: mode switch, pod configuration, parameters, audit, agent decisions.

Built by the admin console issue; nothing here yet.
"""
