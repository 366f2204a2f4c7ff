"""The dashboard's URLs, plus the hello-world baseline: signed in, same middleware, no query."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.urls import path

from dashboard.urls import urlpatterns as dashboard_urlpatterns


@login_required
def hello(request):
    return HttpResponse("hello")


urlpatterns = [path("bench/hello/", hello), *dashboard_urlpatterns]
