from consent.exceptions import DomainError as ApplicationError

__all__ = ["ApplicationError"]
