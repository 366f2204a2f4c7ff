"""Bind the training form: the model-type table, what a person typed, and what it shows back.

Every rule lives in training.params; this module only turns posted form values into the raw
values params.validate takes, and values into what the inputs show. Django's own Form classes
are not used: they would validate a second time, by other rules and in other words.

Sample prompts are rows: the prompt, and where the trainer takes source images, an optional
training image per prompt. A row left blank is dropped. Source images go to Scenario only when
every prompt has one (the API wants one per prompt); a partial set is an error the person sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from training import display, launch_request, params
from training.models import ScenarioModel

# Posted names that steer the form rather than hold a training parameter.
CONTROL_NAMES = frozenset(
    {
        "csrfmiddlewaretoken",
        "model",
        "from_run",
        "idempotency_key",
        "quote_id",
        "action",
        "override_budget",
        "preflight_override",
    }
)
# Extra blank rows a person may add beyond the trainer's limit are not worth keeping.
_MAX_ROWS_SHOWN = params.DASHBOARD_MAX_PROMPTS + 5


@dataclass
class BoundField:
    """Hold one field of the table with what its input shows and its error."""

    field: params.Field
    value: str = ""
    checked: bool = False
    error: str = ""
    image_count: int = 0
    # A secret is never shown back: the input stays empty and says whether one is kept.
    is_set: bool = False

    @property
    def name(self) -> str:
        return self.field.name

    @property
    def input_type(self) -> str:
        return "password" if self.field.secret else "text"

    @property
    def inputmode(self) -> str:
        return {params.INTEGER: "numeric", params.NUMBER: "decimal"}.get(self.field.kind, "")

    @property
    def placeholder(self) -> str:
        return self.field.placeholder

    @property
    def has_blank_choice(self) -> bool:
        return self.field.default is None

    @property
    def bounds(self) -> str:
        """Say the accepted values in words, for the help line."""
        f = self.field
        low = display.number(f.minimum) if f.minimum is not None else None
        high = display.number(f.maximum) if f.maximum is not None else None
        if low is not None and high is not None:
            return f"From {low} to {high}."
        if low is not None:
            return f"More than {low}." if f.exclusive_minimum else f"At least {low}."
        if high is not None:
            return f"At most {high}."
        if f.kind == params.TEXT and f.max_length and f.max_length < params.DASHBOARD_MAX_TEXT:
            return f"At most {f.max_length} characters."
        return ""

    @property
    def default_note(self) -> str:
        """Say Scenario's default, when it is computed from the image count."""
        if not self.field.computed:
            return ""
        value = self.field.default_for(self.image_count)
        return f"Default for {self.image_count} images: {value} ({self.field.default.describe()})."


@dataclass
class PromptRow:
    prompt: str = ""
    source: str = ""


class LaunchForm:
    """Hold the parameters of one model's next training, as posted or as prefilled."""

    def __init__(
        self,
        model: ScenarioModel,
        data: Mapping | None = None,
        initial: Mapping[str, object] | None = None,
        kept_secrets: Mapping[str, str] | None = None,
    ):
        self.model = model
        self.model_type = model.type
        self.family = params.family_for(model.type)
        self.image_count = model.training_images_number
        self.images = launch_request.training_images(model)
        self.prompt_field, self.source_field = _row_fields(self.family)
        self.extra_errors: dict[str, str] = {}
        self.secret_names = {f.name for f in self.family.form_fields if f.secret}
        self._kept = {k: v for k, v in (kept_secrets or {}).items() if k in self.secret_names}
        if data is None:
            values = dict(params.defaults_for(model.type, self.image_count))
            values.update(initial or {})
            self.raw = {k: v for k, v in values.items() if k in self.family.names}
            self.rows = self._rows_from_values(self.raw)
        else:
            self.raw, self.rows = self._raw_from_post(data)
            self._use_kept_secrets()
        self._result: tuple[dict, dict] | None = None

    # --- Reading the post ---------------------------------------------------------------

    def _raw_from_post(self, data: Mapping) -> tuple[dict[str, object], list[PromptRow]]:
        raw: dict[str, object] = {}
        row_names = {f.name for f in (self.prompt_field, self.source_field) if f is not None}
        for key in data:
            if key in CONTROL_NAMES or key in row_names:
                continue
            values = data.getlist(key) if hasattr(data, "getlist") else [data[key]]
            raw[key] = values[0] if len(values) == 1 else list(values)
        rows = self._rows_from_post(data) if self.prompt_field else []
        if self.prompt_field:
            self._rows_to_raw(rows, raw)
        return raw, rows

    def _rows_from_post(self, data: Mapping) -> list[PromptRow]:
        prompts = _getlist(data, self.prompt_field.name)
        sources = _getlist(data, self.source_field.name) if self.source_field else []
        count = max(len(prompts), len(sources))
        rows = []
        for i in range(count):
            prompt = prompts[i] if i < len(prompts) else ""
            source = sources[i] if i < len(sources) else ""
            if prompt.strip() or source.strip():
                rows.append(PromptRow(prompt, source.strip()))
        return rows

    def _rows_to_raw(self, rows: list[PromptRow], raw: dict[str, object]) -> None:
        if not rows:
            return
        raw[self.prompt_field.name] = [row.prompt for row in rows]
        if self.source_field is None:
            return
        chosen = [row.source for row in rows if row.source]
        if len(chosen) == len(rows):
            raw[self.source_field.name] = chosen
        elif chosen:
            self.extra_errors[self.source_field.name] = (
                "Choose a source image for every sample prompt, or for none."
            )

    def _rows_from_values(self, values: Mapping[str, object]) -> list[PromptRow]:
        if self.prompt_field is None:
            return []
        prompts = values.get(self.prompt_field.name) or []
        sources = values.get(self.source_field.name) if self.source_field else None
        if not isinstance(prompts, list):
            return []
        sources = sources if isinstance(sources, list) and len(sources) == len(prompts) else []
        return [
            PromptRow(str(prompt), str(sources[i]) if sources else "")
            for i, prompt in enumerate(prompts[:_MAX_ROWS_SHOWN])
        ]

    def _use_kept_secrets(self) -> None:
        """Keep the secret typed before where its input is empty (the page never shows it)."""
        for name, value in self._kept.items():
            posted = self.raw.get(name)
            if posted is None or (isinstance(posted, str) and not posted.strip()):
                self.raw[name] = value

    # --- Changes a person asks for without typing ---------------------------------------

    def forget_secret(self, name: str) -> None:
        if name in self.secret_names:
            self._kept.pop(name, None)
            self.raw.pop(name, None)
            self._result = None

    def apply_preset(self, key: str) -> bool:
        for preset in self.family.presets:
            if preset.key == key:
                self.raw.update(preset.values)
                self._result = None
                return True
        return False

    def add_row(self) -> None:
        if len(self.rows) < _MAX_ROWS_SHOWN:
            self.rows.append(PromptRow())

    def remove_row(self, index: int) -> None:
        if 0 <= index < len(self.rows):
            del self.rows[index]
            for f in (self.prompt_field, self.source_field):
                if f is not None:
                    self.raw.pop(f.name, None)
            self.extra_errors.clear()
            self._rows_to_raw(self.rows, self.raw)
            self._result = None

    # --- Validation ---------------------------------------------------------------------

    def _validate(self) -> tuple[dict, dict]:
        if self._result is None:
            clean, errors = launch_request.validate(self.model, self.raw)
            self._result = clean, {**errors, **self.extra_errors}
        return self._result

    def is_valid(self) -> bool:
        return not self._validate()[1]

    @property
    def clean(self) -> dict[str, object]:
        return self._validate()[0]

    @property
    def errors(self) -> dict[str, str]:
        return self._validate()[1]

    @property
    def parameters(self) -> dict[str, object]:
        """Return what Scenario is sent for these values (valid forms only)."""
        return launch_request.request_parameters(self.model, self.clean)

    @property
    def kept_secrets(self) -> dict[str, str]:
        """Return the secrets to keep for the next post: valid ones typed now, else those kept."""
        clean, errors = self._validate()
        kept = dict(self._kept)
        for name in self.secret_names:
            value = clean.get(name)
            if name not in errors and isinstance(value, str) and value:
                kept[name] = value
        return kept

    @property
    def other_errors(self) -> list[str]:
        """List errors that belong to no input on the page: unknown names, the whole request."""
        shown = {f.name for f in self.family.form_fields}
        return [
            message if name == params.ALL else f"{name}: {message}"
            for name, message in self.errors.items()
            if name not in shown
        ]

    # --- What the page shows ------------------------------------------------------------

    def bound_fields(self) -> list[BoundField]:
        errors = self.errors
        kept = self.kept_secrets
        return [
            BoundField(
                f,
                value="" if f.secret else _display(self.raw.get(f.name)),
                checked=_checked(self.raw.get(f.name)),
                error=errors.get(f.name, ""),
                image_count=self.image_count,
                is_set=f.name in kept,
            )
            for f in self.family.form_fields
            if not f.is_list
        ]

    def sections(self) -> tuple[list[BoundField], list[BoundField]]:
        """Split the basic fields from the advanced ones, lists (prompt rows) apart."""
        bound = self.bound_fields()
        return [b for b in bound if not b.field.advanced], [b for b in bound if b.field.advanced]

    @property
    def shown_rows(self) -> list[PromptRow]:
        """Return the prompt rows, with one blank row to type into when there are none."""
        return self.rows or [PromptRow()]

    @property
    def suggested_preset(self) -> params.Preset | None:
        return self.family.preset_for(self.image_count)

    @property
    def preset_choices(self) -> list[dict[str, object]]:
        suggested = self.suggested_preset
        return [
            {
                "preset": preset,
                "summary": preset_summary(self.family, preset),
                "suggested": preset == suggested,
            }
            for preset in self.family.presets
        ]

    @property
    def prompt_error(self) -> str:
        return self.errors.get(self.prompt_field.name, "") if self.prompt_field else ""

    @property
    def source_error(self) -> str:
        return self.errors.get(self.source_field.name, "") if self.source_field else ""


def _row_fields(family: params.Family) -> tuple[params.Field | None, params.Field | None]:
    """Return the family's text list shown as rows, and the asset list paired with it, if any."""
    prompt = next((f for f in family.form_fields if f.kind == params.TEXT_LIST), None)
    if prompt is None:
        return None, None
    for rule in family.rules:
        if isinstance(rule, params.SameLength) and rule.other == prompt.name:
            return prompt, family.field(rule.name)
    return prompt, None


def _getlist(data: Mapping, name: str) -> list[str]:
    values = data.getlist(name) if hasattr(data, "getlist") else data.get(name, [])
    if isinstance(values, str):
        values = [values]
    return [v if isinstance(v, str) else "" for v in list(values)[: _MAX_ROWS_SHOWN * 4]]


def _display(value: object) -> str:
    """Write a value as its input shows it: numbers without float noise; lists and bools not."""
    if value is None or isinstance(value, bool | list | tuple | dict):
        return ""
    if isinstance(value, int | float):
        try:
            return display.number(value)
        except (ValueError, OverflowError):
            return ""
    return str(value)


def _checked(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return isinstance(value, str) and value.strip().lower() in {"true", "on", "1", "yes"}


def preset_summary(family: params.Family, preset: params.Preset) -> str:
    """Say the values a preset sets, in words: "learning rate 0.0001, epochs 10"."""
    return ", ".join(
        f"{family.field(name).label.lower()} {_display(value)}"
        for name, value in preset.values.items()
    )
