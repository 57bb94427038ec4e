import pytest


@pytest.mark.django_db
def test_a_nul_in_the_genre_spread_path_is_a_404_not_a_500(client):
    assert client.get("/retrieve/genres/tiny-gpt/0-res%00/0").status_code == 404
