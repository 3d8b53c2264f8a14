"""OAuth 2.0 / OpenID Connect: protocol pieces (DPoP, replay store, ...) and their wiring."""
