from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from shop.schema import ensure_schema

        ensure_schema(str(settings.DATABASES["default"]["NAME"]))
