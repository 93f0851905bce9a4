from django.urls import path

from examples.django_app.views import send

urlpatterns = [path("send", send)]
