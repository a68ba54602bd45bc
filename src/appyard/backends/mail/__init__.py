"""Email backends (core.ports.Mailer): SMTP."""
