"""Attacks by a member with a valid key (and, for some, a sealer's key) or by any client on
the network, performed against real homes: each test proves one rule holds. docs/security.md
lists them with their reason codes and figures."""
