"""Scenario's training API, simulated; mounted at /sim/v1/ when settings.SCENARIO_SIMULATOR."""

from __future__ import annotations

from django.urls import path, re_path

from simulator import datasets, views

app_name = "simulator"

urlpatterns = [
    path("models", views.models_collection, name="models"),
    path("models/<str:model_id>", views.model_detail, name="model"),
    path("models/<str:model_id>/train", views.train, name="train"),
    path("models/<str:model_id>/train/action", views.train_action, name="train-action"),
    path("models/<str:model_id>/training-images", datasets.training_images, name="training-images"),
    path(
        "models/<str:model_id>/training-images/pairs",
        datasets.training_image_pairs,
        name="training-image-pairs",
    ),
    path(
        "models/<str:model_id>/training-images/<str:image_id>",
        datasets.training_image,
        name="training-image",
    ),
    path("assets", datasets.assets, name="assets"),
    path("uploads", datasets.uploads, name="uploads"),
    path("uploads/<str:upload_id>", datasets.upload_detail, name="upload"),
    path("uploads/<str:upload_id>/action", datasets.upload_action, name="upload-action"),
    # Where an upload's parts are PUT: a presigned storage URL on Scenario.
    path("upload-parts/<str:upload_id>/<int:number>", datasets.upload_part, name="upload-part"),
    path("jobs", views.jobs_collection, name="jobs"),
    path("jobs/<str:job_id>", views.job_detail, name="job"),
    path("jobs/<str:job_id>/action", views.job_action, name="job-action"),
    path("samples/<str:job_id>/<str:epoch>/<int:prompt>.svg", views.sample_image, name="sample"),
    path("assets/<str:asset_id>", views.asset_image, name="asset"),
    path("thumbnails/<str:asset_id>", datasets.asset_thumbnail, name="thumbnail"),
    # Anything else under the API answers like the API would: JSON, not Django's HTML page.
    re_path(r"^.*$", views.not_found),
]
