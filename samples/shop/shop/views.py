"""Views of the sample shop: each one exercises something the bridge must carry."""

import logging
from typing import Any

import requests
import structlog
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger("shop")
struct_logger = structlog.get_logger("shop.struct")

ORDER_QUERY_COUNT = 5


def health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def order_detail(request: HttpRequest, order_id: int) -> JsonResponse:
    """Exactly ``ORDER_QUERY_COUNT`` SQL queries, also when the order is missing."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, customer_id, status FROM shop_order WHERE id = %s", [order_id])
        order = cursor.fetchone()
        customer_id = order[1] if order else 0
        cursor.execute("SELECT name FROM customer WHERE id = %s", [customer_id])
        customer = cursor.fetchone()
        cursor.execute(
            "SELECT product_id, quantity FROM order_line WHERE order_id = %s ORDER BY id",
            [order_id],
        )
        lines = cursor.fetchall()
        cursor.execute("SELECT id, name, price_cents FROM product ORDER BY id")
        products = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}
        cursor.execute("INSERT INTO order_view (order_id) VALUES (%s)", [order_id])
    if order is None:
        return JsonResponse({"error": "no such order", "id": order_id}, status=404)
    items = [
        {"product": products[product_id][0], "quantity": quantity}
        for product_id, quantity in lines
    ]
    total = sum(products[product_id][1] * quantity for product_id, quantity in lines)
    return JsonResponse(
        {
            "id": order[0],
            "status": order[2],
            "customer": customer[0] if customer else None,
            "items": items,
            "total_cents": total,
        }
    )


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom from shop")


def account(request: HttpRequest, username: str) -> JsonResponse:
    """Who is asking, for errors and transactions (otel-bridge's context API); ``?fail=1``
    then fails, so the error shows it. None of it may reach another request's error."""
    from otel_bridge import context

    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM customer WHERE name = %s AND id > 0", [username])
        cursor.fetchone()
    context.set_user(id=username, username=username)
    context.set_tag("account.plan", "gold")
    context.add_breadcrumb(f"opened the account of {username}", category="shop")
    if request.GET.get("fail"):
        raise RuntimeError(f"account {username} failed")
    return JsonResponse({"user": username})


def not_found(request: HttpRequest) -> HttpResponse:
    raise Http404("nothing here")


def call(request: HttpRequest) -> JsonResponse:
    """GET ``?url=`` and report the downstream status, headers and (JSON) body."""
    url = request.GET.get("url")
    if not url:
        return JsonResponse({"error": "missing ?url="}, status=400)
    response = requests.get(url, timeout=10)
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = response.text[:2000]
    return JsonResponse(
        {"status": response.status_code, "headers": dict(response.headers), "body": body}
    )


def echo_headers(request: HttpRequest) -> JsonResponse:
    """The request headers as received (names as Django normalises them)."""
    return JsonResponse({"headers": dict(request.headers)})


def log(request: HttpRequest) -> JsonResponse:
    logger.info("shop log info", extra={"order_id": 7})
    logger.error("shop log error: payment declined", extra={"order_id": 7})
    struct_logger.info("shop structlog info", order_id=7)
    return JsonResponse({"logged": 3})
