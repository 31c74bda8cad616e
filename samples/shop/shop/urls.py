from django.urls import path

from shop import views

urlpatterns = [
    path("health/", views.health),
    path("orders/<int:order_id>/", views.order_detail),
    path("boom/", views.boom),
    path("account/<str:username>/", views.account),
    path("not-found/", views.not_found),
    path("call/", views.call),
    path("echo-headers/", views.echo_headers),
    path("log/", views.log),
]
