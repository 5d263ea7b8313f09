"""Django management commands of zodworker."""

__all__: list[str] = []
