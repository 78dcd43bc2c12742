"""Webhook views."""
