"""Forms of the server-rendered pages. They only validate input; writes go through features.services."""

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm

from features.api.inputs import INT32_MAX  # features.index is an int4 column
from features.models import Visibility
from features.services.comments import COMMENT_MAX_CHARS
from features.services.lists import LIST_NAME_MAX, LIST_TEXT_MAX


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional.")

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username", "email")


class JumpForm(forms.Form):
    index = forms.IntegerField(label="Feature index", min_value=0, max_value=INT32_MAX)


class ListForm(forms.Form):
    name = forms.CharField(max_length=LIST_NAME_MAX)
    description = forms.CharField(required=False, max_length=LIST_TEXT_MAX, widget=forms.Textarea(attrs={"rows": 3}))
    default_test_text = forms.CharField(
        required=False,
        max_length=LIST_TEXT_MAX,
        label="Default test text",
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Text to try these features on.",
    )
    visibility = forms.ChoiceField(
        choices=[
            (Visibility.UNLISTED, "Unlisted — anyone with the link"),
            (Visibility.PUBLIC, "Public — also shown on your profile"),
            (Visibility.PRIVATE, "Private — only you"),
        ],
        initial=Visibility.UNLISTED,
    )


class CommentForm(forms.Form):
    text = forms.CharField(max_length=COMMENT_MAX_CHARS, widget=forms.Textarea(attrs={"rows": 2}))


class ListAddFeatureForm(forms.Form):
    """Add a feature to a list by its address, `modelId / source / index`."""

    model_id = forms.CharField(label="Model", max_length=128)
    source_id = forms.CharField(label="Source", max_length=255)
    index = forms.IntegerField(min_value=0, max_value=INT32_MAX)
    description = forms.CharField(required=False, max_length=LIST_TEXT_MAX, label="Note")


class ApiKeyForm(forms.Form):
    name = forms.CharField(required=False, max_length=128, label="Key name", help_text="e.g. the script using it")


class ModelNewForm(forms.Form):
    id = forms.CharField(max_length=32, label="Model id", help_text="2–32 of a-z, 0-9 and '-', e.g. gemma-2-2b")
    layers = forms.IntegerField(min_value=1, max_value=127)
    display_name = forms.CharField(max_length=64, required=False, label="Display name")
    url = forms.URLField(max_length=512, required=False, label="Link (paper, model card)")


class SourceSetNewForm(forms.Form):
    model_id = forms.CharField(max_length=128, label="Model id")
    name = forms.CharField(max_length=64, help_text="1–64 of a-z, 0-9 and '-': its sources are <layer>-<name>")
    description = forms.CharField(max_length=128, required=False)
    url = forms.URLField(max_length=512, required=False, label="Link")
