"""Reading rendered pages: the launch form's inputs, values, errors and what a browser posts."""

from __future__ import annotations

from html.parser import HTMLParser

from training.forms import CONTROL_NAMES


class FormReader(HTMLParser):
    """The inputs of the launch form: name -> values, checked boxes, selected options."""

    def __init__(self, form_id="launch-form"):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.depth = 0
        self.inputs: list[dict] = []
        self.select: dict | None = None
        self.ids: dict[str, dict] = {}
        self.texts: dict[str, list[str]] = {}
        self._text_for: list[str] = []
        self.textarea: dict | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids[attrs["id"]] = attrs
        if tag == "form" and attrs.get("id") == self.form_id:
            self.depth = 1
            return
        if tag == "ul" and attrs.get("id", "").startswith("err-"):
            self._text_for.append(attrs["id"])
        if not self.depth:
            return
        if tag == "input":
            self.inputs.append({"tag": tag, **attrs})
        elif tag == "textarea":
            self.textarea = {"tag": tag, **attrs, "value": ""}
            self.inputs.append(self.textarea)
        elif tag == "select":
            self.select = {"tag": tag, **attrs, "options": [], "value": None}
            self.inputs.append(self.select)
        elif tag == "option" and self.select is not None:
            self.select["options"].append(attrs.get("value", ""))
            if "selected" in attrs:
                self.select["value"] = attrs.get("value", "")

    def handle_endtag(self, tag):
        if tag == "form" and self.depth:
            self.depth = 0
        if tag == "select" and self.select is not None:
            if self.select["value"] is None and self.select["options"]:
                self.select["value"] = self.select["options"][0]
            self.select = None
        if tag == "ul" and self._text_for:
            self._text_for.pop()
        if tag == "textarea":
            self.textarea = None

    def handle_data(self, data):
        if self.textarea is not None:
            self.textarea["value"] += data
        for slot in self._text_for:
            self.texts.setdefault(slot, []).append(data)

    # --- what tests ask -----------------------------------------------------------------

    def parameter_names(self) -> set[str]:
        return {
            i["name"]
            for i in self.inputs
            if i.get("name") and i["name"] not in CONTROL_NAMES and i.get("type") != "submit"
        }

    def value(self, name: str):
        for i in self.inputs:
            if i.get("name") != name:
                continue
            if i["tag"] in ("select", "textarea"):
                return i["value"]
            if i.get("type") == "checkbox":
                return "checked" in i
            return i.get("value", "")
        raise KeyError(name)

    def hidden(self, name: str) -> str | None:
        for i in self.inputs:
            if i.get("name") == name and i.get("type") == "hidden":
                return i.get("value", "")
        return None

    def error(self, name: str) -> str:
        return "".join(self.texts.get(f"err-{name}", [])).strip()

    def post_data(self) -> dict[str, list[str]]:
        """What a browser would post: every named input, checkboxes only when checked."""
        data: dict[str, list[str]] = {}
        for i in self.inputs:
            name = i.get("name")
            if not name or i.get("type") == "submit":
                continue
            if i.get("type") == "checkbox" and "checked" not in i:
                continue
            value = i["value"] if i["tag"] in ("select", "textarea") else i.get("value", "")
            data.setdefault(name, []).append(value or "")
        return data


def read_form(response) -> FormReader:
    """Read the launch form of a response."""
    reader = FormReader()
    reader.feed(response.content.decode())
    return reader
