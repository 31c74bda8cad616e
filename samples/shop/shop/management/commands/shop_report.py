from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection


class Command(BaseCommand):
    help = "Print a one-line report of orders and revenue."

    def handle(self, *args: Any, **options: Any) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM shop_order")
            orders = cursor.fetchone()[0]
            cursor.execute(
                "SELECT COALESCE(SUM(p.price_cents * l.quantity), 0)"
                " FROM order_line l JOIN product p ON p.id = l.product_id"
            )
            revenue = cursor.fetchone()[0]
        self.stdout.write(f"shop_report: {orders} orders, revenue {revenue / 100:.2f}")
