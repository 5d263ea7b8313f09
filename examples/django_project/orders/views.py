"""Writing an order and enqueueing its shipping in one transaction."""

import json

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from orders.jobs import Orders, Ship
from orders.models import Order
from zodworker.integrations.django import enqueue


class OutOfStock(Exception):
    pass


@csrf_exempt
def create_order(request: HttpRequest) -> HttpResponse:
    body = json.loads(request.body)
    try:
        with transaction.atomic():
            order = Order.objects.create(item=body["item"])
            handle = enqueue(Orders.ship, Ship(order_id=order.id))  # in this transaction
            if body.get("out_of_stock"):
                raise OutOfStock(body["item"])  # rolls back the order and the job
    except OutOfStock:
        return JsonResponse({"error": "out of stock"}, status=409)
    return JsonResponse({"order_id": order.id, "job_id": handle.id}, status=201)


def show_order(request: HttpRequest, order_id: int) -> HttpResponse:
    order = Order.objects.get(id=order_id)
    return JsonResponse({"id": order.id, "item": order.item, "shipped": order.shipped})
