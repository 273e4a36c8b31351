from support.registry import auth_registry, hostile_registry, plain_registry, token_registry

__all__ = ["auth_registry", "hostile_registry", "plain_registry", "token_registry"]
