"""JSON API v1 (bearer tokens) and its OpenAPI document."""
