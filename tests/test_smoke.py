def test_create_and_read_customer(api):
    created = api.create_customer()
    response = api.get(f"/v1/customers/{created['id']}")
    assert response.status_code == 200
    assert response.get_json()["companyProfile"]["domain"] == created["companyProfile"]["domain"]
