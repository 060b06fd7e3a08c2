"""Forms of the SOP content pages (templates, approvals, phrases, blocked touches, guards, calendar)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from sop.content_services import CAP_PERIODS
from sop.models import Channel, ForbiddenPhrase

CAP_CHANNELS = [(Channel.WECOM, _("企业微信 1 对 1")), (Channel.WECOM_GROUP, _("企业微信群")),
                (Channel.SMS, _("短信")), (Channel.APP_PUSH, _("App 推送"))]
PERIOD_LABELS = {"day": _("每日"), "week": _("每周"), "month": _("每月")}


def _products():
    from customers.models import Product

    return Product.objects.order_by("risk_level", "code")


class ProductChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return _("%(name)s（%(code)s）") % {"name": obj.name, "code": f"{obj.code} · {obj.risk_level}"}


class TemplateForm(forms.Form):
    name = forms.CharField(label=_("名称"), max_length=100)
    channel = forms.ChoiceField(label=_("渠道"), choices=Channel.choices)
    product = ProductChoiceField(label=_("涉及产品"), queryset=None, required=False, empty_label=_("不涉及产品"))
    body = forms.CharField(label=_("内容"), widget=forms.Textarea(attrs={"rows": 6}), max_length=2000)

    def __init__(self, *args, template=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["product"].queryset = _products()
        for field in self.fields.values():
            field.widget.attrs["class"] = "form-select" if isinstance(field.widget, forms.Select) else "form-control"
        if template is not None:  # the channel of a template is fixed once it exists
            self.fields["channel"].disabled = True
            self.fields["channel"].required = False


class ReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", _("批准")), ("reject", _("驳回"))])
    note = forms.CharField(label=_("审核意见"), max_length=500, required=False)

    def clean(self):
        data = super().clean()
        if data.get("decision") == "reject" and not (data.get("note") or "").strip():
            self.add_error("note", _("驳回时请写明原因"))
        return data


class PhraseForm(forms.Form):
    kind = forms.ChoiceField(label=_("清单"), choices=ForbiddenPhrase.Kind.choices, initial=ForbiddenPhrase.Kind.FORBIDDEN,
                             required=False)

    def clean_kind(self):
        return self.cleaned_data.get("kind") or ForbiddenPhrase.Kind.FORBIDDEN
    phrase = forms.CharField(label=_("表述"), max_length=50)
    reason = forms.CharField(label=_("原因"), max_length=200, required=False)


class BlockedFilterForm(forms.Form):
    reason = forms.ChoiceField(label=_("原因"), required=False)
    journey = forms.ModelChoiceField(label=_("旅程"), queryset=None, required=False, empty_label=_("全部旅程"))
    since = forms.DateField(label=_("从"), required=False)
    until = forms.DateField(label=_("到"), required=False)

    def __init__(self, *args, **kwargs):
        from sop.content_services import journeys_for_filter, problem_reason_choices

        super().__init__(*args, **kwargs)
        self.fields["reason"].choices = [("", _("全部原因")), *problem_reason_choices()]
        self.fields["journey"].queryset = journeys_for_filter()

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", _("结束日期不能早于开始日期"))
        return data


class GuardPolicyForm(forms.Form):
    quiet_start = forms.TimeField(label=_("免打扰开始"), input_formats=["%H:%M", "%H:%M:%S"])
    quiet_end = forms.TimeField(label=_("免打扰结束"), input_formats=["%H:%M", "%H:%M:%S"])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for channel, _label in CAP_CHANNELS:
            for period in CAP_PERIODS:
                self.fields[f"{channel}_{period}"] = forms.IntegerField(
                    label=PERIOD_LABELS[period], required=False, min_value=1, max_value=1000)

    @staticmethod
    def initial_from(policy) -> dict:
        initial = {"quiet_start": policy.quiet_start, "quiet_end": policy.quiet_end}
        for channel, periods in (policy.caps or {}).items():
            for period, limit in periods.items():
                initial[f"{channel}_{period}"] = limit
        return initial

    def rows(self):
        """One row per channel with its three bound fields, for the template."""
        return [{"label": label, "fields": [self[f"{channel}_{p}"] for p in CAP_PERIODS]} for channel, label in CAP_CHANNELS]

    def caps(self) -> dict:
        caps = {}
        for channel, _label in CAP_CHANNELS:
            values = {p: self.cleaned_data[f"{channel}_{p}"] for p in CAP_PERIODS
                      if self.cleaned_data.get(f"{channel}_{p}") is not None}
            if values:
                caps[str(channel)] = values
        return caps


class TradingDayForm(forms.Form):
    day = forms.DateField(label=_("日期"))
    is_open = forms.TypedChoiceField(label=_("状态"), coerce=lambda v: v == "1",
                                     choices=[("1", _("交易日")), ("0", _("休市"))])
    note = forms.CharField(label=_("说明"), max_length=100)


class CalendarNoticeForm(forms.Form):
    """The exchange's holiday notice for one year: pasted, or a small text file."""

    MAX_FILE_BYTES = 64 * 1024

    year = forms.IntegerField(label=_("年份"), min_value=1990, max_value=2200)
    text = forms.CharField(label=_("休市安排"), required=False, widget=forms.Textarea(attrs={"rows": 8}),
                           help_text=_("每行一段休市日期，可附名称，如 2027-02-05~2027-02-12 春节；也可直接粘贴交易所通知原文。"))
    file = forms.FileField(label=_("或上传文本文件"), required=False)

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        if upload:
            if upload.size > self.MAX_FILE_BYTES:
                self.add_error("file", _("文件过大（最多 64 KB）"))
                return data
            raw = upload.read()
            for encoding in ("utf-8-sig", "gb18030"):
                try:
                    data["text"] = raw.decode(encoding)
                    break
                except UnicodeDecodeError:
                    continue
            else:
                self.add_error("file", _("无法识别文件编码，请保存为 UTF-8 文本"))
        if not (data.get("text") or "").strip() and not self.errors:
            self.add_error("text", _("请粘贴休市安排或上传文件"))
        return data
