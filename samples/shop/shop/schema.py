"""The shop's tables and seed data, created at startup (no migrations to run).

``_sqlite3`` (the C module behind ``sqlite3``) is used on purpose: the OTel sqlite3
instrumentation wraps ``sqlite3.connect``, and seeding at startup is not something
the sample should trace (it would show up as root spans before any request).
"""

import _sqlite3

SCHEMA = """
CREATE TABLE IF NOT EXISTS customer (id INTEGER PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS product (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
                                    price_cents INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS shop_order (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
                                       status TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS order_line (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL,
                                       product_id INTEGER NOT NULL, quantity INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS order_view (id INTEGER PRIMARY KEY AUTOINCREMENT,
                                       order_id INTEGER NOT NULL);
"""

ORDER_COUNT = 10


def ensure_schema(path: str) -> None:
    """Create the tables and seed 3 customers, 4 products, 10 orders (idempotent)."""
    connection = _sqlite3.connect(path)
    try:
        connection.executescript(SCHEMA)
        if connection.execute("SELECT COUNT(*) FROM shop_order").fetchone()[0] == 0:
            connection.executemany(
                "INSERT INTO customer (id, name) VALUES (?, ?)",
                [(1, "Ada"), (2, "Grace"), (3, "Linus")],
            )
            connection.executemany(
                "INSERT INTO product (id, name, price_cents) VALUES (?, ?, ?)",
                [(1, "keyboard", 4900), (2, "mouse", 1900), (3, "cable", 500), (4, "lamp", 2500)],
            )
            for order_id in range(1, ORDER_COUNT + 1):
                connection.execute(
                    "INSERT INTO shop_order (id, customer_id, status) VALUES (?, ?, ?)",
                    (order_id, order_id % 3 + 1, "paid" if order_id % 2 else "open"),
                )
                connection.executemany(
                    "INSERT INTO order_line (order_id, product_id, quantity) VALUES (?, ?, ?)",
                    [(order_id, order_id % 4 + 1, 1), (order_id, (order_id + 1) % 4 + 1, 2)],
                )
        connection.commit()
    finally:
        connection.close()
