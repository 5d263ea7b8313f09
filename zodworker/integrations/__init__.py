"""Fitting zodworker into web frameworks: :mod:`.fastapi` (FastAPI and Starlette) and
:mod:`.django` (a Django app). Each imports its framework only when it is imported."""

__all__: list[str] = []
