import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import signup  # noqa: E402


class SignupTest(unittest.TestCase):
    def setUp(self):
        signup.USERS.clear()

    def test_a_new_user_is_created(self):
        status, body = signup.signup({"email": "ada@example.com", "password": "correct horse"})
        self.assertEqual(status, 201)
        self.assertEqual(body, {"email": "ada@example.com"})


if __name__ == "__main__":
    unittest.main()
