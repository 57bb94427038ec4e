"""Page routes of the features app. Fixed prefixes come first: `/<model>/...` catches everything else."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path, register_converter

from features import views


class SegmentConverter:
    """One path segment without a NUL: Postgres refuses NUL in text, so such a path would be a 500, not a 404."""

    regex = r"[^/\x00]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value) -> str:
        return str(value)


register_converter(SegmentConverter, "segment")

# A feature's address. The index is ASCII digits (`\d` also matches other scripts' digits, which int() reads but
# a hand-written query does not) and may be negative: rows imported before negatives were refused still exist,
# and every template that links a feature (here and in other apps) would raise NoReverseMatch on them otherwise.
FEATURE = rf"^(?P<model_id>[-\w]+)/(?P<source_id>{SegmentConverter.regex})/(?P<index>-?[0-9]+)/"

urlpatterns = [
    path("", views.home, name="home"),
    path("robots.txt", views.robots_txt, name="robots"),
    path("sitemap.xml", views.sitemap_index, name="sitemap"),
    path("sitemap-pages.xml", views.sitemap_pages, name="sitemap-pages"),
    path("sitemap/<slug:model_id>/<segment:source_id>.xml", views.sitemap_features, name="sitemap-features"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("account/", views.account, name="account"),
    path("account/keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api-key-revoke"),
    path("user/<segment:username>/", views.user_page, name="user"),
    path("release/<segment:name>/", views.release_page, name="release"),
    path("sae-bench/", views.sae_bench_page, name="sae-bench"),
    path("quick-list/", views.quick_list, name="quick-list"),
    path("quick-list/save/", views.quick_list_save, name="quick-list-save"),
    path("list/new/", views.list_new, name="list-new"),
    path("new/", views.create_page, name="create"),
    path("list/<segment:list_id>/", views.list_page, name="list"),
    path("list/<segment:list_id>/edit/", views.list_edit, name="list-edit"),
    path("list/<segment:list_id>/delete/", views.list_remove, name="list-delete"),
    path("list/<segment:list_id>/add/", views.list_add_feature, name="list-add-feature"),
    path("list/<segment:list_id>/remove/<int:feature_id>/", views.list_remove_item, name="list-remove-feature"),
    path("list/<segment:list_id>/comment/", views.list_comment, name="list-comment"),
    path("list-comment/<segment:comment_id>/delete/", views.list_comment_remove, name="list-comment-delete"),
    path("comment/<segment:comment_id>/delete/", views.comment_remove, name="comment-delete"),
    path("<slug:model_id>/", views.model_page, name="model"),
    path("<slug:model_id>/<segment:name>/", views.set_or_source_page, name="set-or-source"),
    re_path(rf"{FEATURE}$", views.feature_page, name="feature"),
    re_path(rf"{FEATURE}bookmark/$", views.feature_bookmark, name="feature-bookmark"),
    re_path(rf"{FEATURE}comment/$", views.feature_comment, name="feature-comment"),
    re_path(rf"{FEATURE}add-to-list/$", views.feature_add_to_list, name="feature-add-to-list"),
]
