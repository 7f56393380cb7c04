from consent.exceptions import DomainError as ApplicationError
from consent.exceptions import Problem, problem

__all__ = ["ApplicationError", "Problem", "problem"]
