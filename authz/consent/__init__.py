"""Consent: the vocabulary now; records and their lifecycle with the consent capability."""
