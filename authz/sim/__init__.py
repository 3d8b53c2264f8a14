"""JPKI-SIM: the simulated My Number Card issuing side (CAs, status, link service, cards).

Structurally faithful to JPKI (reference sections a1-a8, b1-b7) but unmistakably simulated:
own roots named ``JPKI-SIM``, no real personal data, and no model of the 12-digit My Number.
The verifier in ``authz.identity`` never imports this package (DESIGN section 3).
"""

from __future__ import annotations
