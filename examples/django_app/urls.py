from django.contrib import admin
from django.urls import path

from examples.django_app.views import send

urlpatterns = [path("send", send), path("admin/", admin.site.urls)]
