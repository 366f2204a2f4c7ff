from django.conf import settings


def test_it_keeps_test_data_out_of_the_project_folder():
    assert settings.DATA_DIR.name == "test"
