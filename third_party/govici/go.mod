module github.com/strongswan/govici

go 1.24
