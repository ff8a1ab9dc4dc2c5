-- The Prefect server's database; POSTGRES_DB creates the MLflow one.
CREATE DATABASE prefect;
