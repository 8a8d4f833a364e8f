from django.urls import path

from pods import views

app_name = "pods"

urlpatterns = [
    path("new/<int:offer_id>/", views.start, name="new"),
    path("drafts/<uuid:token>/configure/", views.configure, name="configure"),
    path("drafts/<uuid:token>/review/", views.review, name="review"),
    path("drafts/<uuid:token>/deploy/", views.deploy, name="deploy"),
    path("activate/<str:token>/", views.activate, name="activate"),
    path("<int:rental_id>/", views.detail, name="detail"),
    path("<int:rental_id>/stop/", views.stop, name="stop"),
    path("<int:rental_id>/start/", views.start_again, name="start"),
    path("<int:rental_id>/terminate/", views.terminate, name="terminate"),
    path("<int:rental_id>/scale/", views.scale, name="scale"),
    path("<int:rental_id>/failover/", views.accept_failover, name="failover"),
    path("<int:rental_id>/resend-link/", views.resend, name="resend"),
]
