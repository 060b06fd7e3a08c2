"""Forms of the 客群 pages: only the shape of what is posted; the rules live in segments.services."""

import json

from django import forms
from django.utils.translation import gettext_lazy as _

from segments.actions import SEGMENT_ACTION_HANDLERS
from segments.models import SegmentAction, SegmentExport


class _Styled:
    def _style(self):
        for field in self.fields.values():
            css = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
            field.widget.attrs.setdefault("class", css)


class SegmentForm(_Styled, forms.Form):
    name = forms.CharField(label=_("名称"), max_length=100)
    description = forms.CharField(label=_("说明"), max_length=500, required=False)
    rule = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._style()

    def clean_rule(self):
        try:
            return json.loads(self.cleaned_data["rule"])
        except ValueError:
            raise forms.ValidationError(_("规则不是有效的 JSON")) from None


class SnapshotForm(_Styled, forms.Form):
    name = forms.CharField(label=_("快照名称"), max_length=100)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._style()


class ExportForm(_Styled, forms.Form):
    format = forms.ChoiceField(label=_("格式"), choices=SegmentExport.Format.choices)
    snapshot = forms.TypedChoiceField(label=_("范围"), coerce=int, empty_value=None, required=False)

    def __init__(self, *args, snapshots=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["snapshot"].choices = [("", _("当前成员（动态）"))] + [(s.pk, s.name) for s in snapshots]
        self._style()


def action_kinds_available() -> list[tuple[str, str]]:
    """Tag and task actions always; SOP enrolment and group invites only once their areas registered a handler."""
    built_in = {SegmentAction.Kind.TAG_ADD, SegmentAction.Kind.TAG_REMOVE, SegmentAction.Kind.TASKS}
    return [(k, label) for k, label in SegmentAction.Kind.choices
            if k in built_in or k in SEGMENT_ACTION_HANDLERS]


class ActionForm(_Styled, forms.Form):
    """One form for every bulk action; each kind reads only its own fields into ``params``."""

    kind = forms.ChoiceField(label=_("动作"))
    tag = forms.ChoiceField(label=_("标签"), required=False)
    title = forms.CharField(label=_("任务内容"), max_length=200, required=False)
    due_days = forms.IntegerField(label=_("几天内完成"), min_value=1, max_value=30, required=False, initial=3)
    journey_id = forms.TypedChoiceField(label=_("SOP 旅程"), coerce=int, empty_value=None, required=False)
    group_id = forms.TypedChoiceField(label=_("客户群"), coerce=int, empty_value=None, required=False)

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        from tagging.models import Tag

        self.fields["kind"].choices = action_kinds_available()
        self.fields["tag"].choices = [("", _("选择标签"))] + [
            (t.code, f"{t.category.name} · {t.name}") for t in Tag.objects.select_related("category").order_by(
                "category__code", "code")]
        kinds = dict(self.fields["kind"].choices)
        if SegmentAction.Kind.SOP_ENROLL in kinds:
            from django.apps import apps

            journey = apps.get_model("sop", "Journey")
            self.fields["journey_id"].choices = [("", _("选择旅程"))] + [  # only a running journey takes clients
                (j.pk, j.name) for j in journey.objects.filter(status="live").order_by("name")[:500]]
        if SegmentAction.Kind.GROUP_INVITE in kinds:
            from django.apps import apps

            group = apps.get_model("groups", "GroupChat")
            qs = group.objects.visible_to(user) if user is not None else group.objects.none()
            self.fields["group_id"].choices = [("", _("选择客户群"))] + [(g.pk, g.name) for g in qs.order_by("name")[:500]]
        self._style()

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        required = {"tag_add": ["tag"], "tag_remove": ["tag"], "tasks": ["title", "due_days"],
                    "sop_enroll": ["journey_id"], "group_invite": ["group_id"]}.get(kind, [])
        for name in required:
            if data.get(name) in (None, ""):
                self.add_error(name, _("必填"))
        return data

    def params(self) -> dict:
        data, kind = self.cleaned_data, self.cleaned_data["kind"]
        if kind in ("tag_add", "tag_remove"):
            return {"tag": data["tag"]}
        if kind == "tasks":
            return {"title": data["title"], "due_days": data["due_days"]}
        if kind in ("sop_enroll", "group_invite"):  # the names the SOP and groups handlers take
            field = "journey_id" if kind == "sop_enroll" else "group_id"
            return {field: data[field]}
        return {}
