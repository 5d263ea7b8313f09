"""The orders app's tasks: shipping an order once it is committed."""

from django.db import close_old_connections
from pydantic import BaseModel

from zodworker import JobHelpers, TaskCatalog, task


class Ship(BaseModel):
    order_id: int


def ship(payload: Ship, helpers: JobHelpers) -> None:
    from orders.models import Order  # the worker imports this module before Django is set up

    try:
        Order.objects.filter(id=payload.order_id).update(shipped=True)
    finally:
        close_old_connections()  # handlers run in worker threads


class Orders(TaskCatalog):
    ship = task(Ship, ship)
