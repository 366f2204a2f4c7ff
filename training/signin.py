"""The sign-in form: Django's own, with the username's length really enforced."""

from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator


class SignInForm(AuthenticationForm):
    """Refuse a username longer than any account's before it reaches authentication.

    AuthenticationForm sets the field's max_length after the field is built, so no validator
    checks it: an over-long name went on to django-axes, whose attempt log keeps 255
    characters, and failed there on Postgres.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.validators.append(MaxLengthValidator(field.max_length))
