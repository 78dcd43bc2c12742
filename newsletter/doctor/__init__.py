"""`newsletter doctor`: the configuration and deliverability pre-flight."""
