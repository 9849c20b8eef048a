"""Loopback fakes shared by tests (fake Kubernetes API server, provider emulators)."""
