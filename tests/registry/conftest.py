from support.registry import (
    auth_registry,
    hostile_registry,
    plain_registry,
    tls_registry,
    token_registry,
)

__all__ = ["auth_registry", "hostile_registry", "plain_registry", "tls_registry",
           "token_registry"]
