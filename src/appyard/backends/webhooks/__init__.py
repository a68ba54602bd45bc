"""Webhook delivery backends (core.ports.WebhookSender): HTTP."""
