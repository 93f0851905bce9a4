from django.apps import AppConfig


class ExampleConfig(AppConfig):
    name = "examples.django_app"
    label = "example_shop"

    def ready(self) -> None:
        from examples.django_app import receivers  # noqa: F401 - connects the receiver
