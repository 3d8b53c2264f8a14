"""My Number Card-style (JPKI) identity: the verifying side (no Flask, never imports sim)."""
