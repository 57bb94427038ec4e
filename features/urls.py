"""Page routes of the features app. Fixed prefixes come first: `/<model>/...` catches everything else."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from features import views

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("account/", views.account, name="account"),
    path("account/keys/<int:key_id>/revoke/", views.api_key_revoke_view, name="api-key-revoke"),
    path("user/<str:username>/", views.user_page, name="user"),
    path("list/new/", views.list_new, name="list-new"),
    path("list/<str:list_id>/", views.list_page, name="list"),
    path("list/<str:list_id>/edit/", views.list_edit, name="list-edit"),
    path("list/<str:list_id>/delete/", views.list_remove, name="list-delete"),
    path("list/<str:list_id>/add/", views.list_add_feature, name="list-add-feature"),
    path("list/<str:list_id>/remove/<int:feature_id>/", views.list_remove_item, name="list-remove-feature"),
    path("comment/<str:comment_id>/delete/", views.comment_remove, name="comment-delete"),
    path("<slug:model_id>/", views.model_page, name="model"),
    path("<slug:model_id>/<str:name>/", views.set_or_source_page, name="set-or-source"),
    re_path(r"^(?P<model_id>[-\w]+)/(?P<source_id>[^/]+)/(?P<index>\d+)/$", views.feature_page, name="feature"),
    re_path(
        r"^(?P<model_id>[-\w]+)/(?P<source_id>[^/]+)/(?P<index>\d+)/bookmark/$",
        views.feature_bookmark,
        name="feature-bookmark",
    ),
    re_path(
        r"^(?P<model_id>[-\w]+)/(?P<source_id>[^/]+)/(?P<index>\d+)/comment/$",
        views.feature_comment,
        name="feature-comment",
    ),
    re_path(
        r"^(?P<model_id>[-\w]+)/(?P<source_id>[^/]+)/(?P<index>\d+)/add-to-list/$",
        views.feature_add_to_list,
        name="feature-add-to-list",
    ),
]
