// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Coalition — the ledger of a tclearn trusted coalition.
/// @notice Records every model increment (by hash), the randomly drawn general that checks it, and the
///         validators' votes; commits a candidate once two thirds of the eligible validators approve.
///         Model blobs live off-chain; their URI is emitted in `Submitted`, never stored, to keep a
///         submission cheap. Every state change emits an event, so history can be rebuilt from logs.
/// @dev Compiled for the `paris` EVM (no PUSH0) so that Ganache, Anvil and py-evm all run it.
contract Coalition {
    // ---- roles (bitmask) ------------------------------------------------------------------------
    uint8 public constant MEMBER = 1;
    uint8 public constant VALIDATOR = 2;
    uint8 public constant AUDITOR = 4;
    uint8 public constant SUPERVISOR = 8;
    uint8 private constant ALL_ROLES = 15;

    enum State { None, Submitted, Open, Committed, Rejected, Expired, Stale }

    uint8 public constant REJECT_INTEGRITY = 1;
    uint8 public constant REJECT_VOTES = 2;

    struct Member {
        uint8 roles;
        bool active;
        uint16 index; // bit position in the vote bitmaps, fixed for life
        uint48 validatorSince; // first model id this account may vote on
        uint40 joinedAt;
        bytes32 encryptionKey; // X25519 public key
        string name;
    }

    /// @dev Two hashes plus ONE packed slot: proposer and general are member indices (uint16), so a vote
    ///      reads and rewrites a single slot. The URI is in the Submitted event only.
    struct Model {
        bytes32 modelHash;
        bytes32 metadataHash;
        uint48 parentId;
        uint16 proposer;
        uint16 general;
        State state;
        uint16 eligible;
        uint16 approvals;
        uint16 rejections;
        uint40 generalDeadline;
        uint40 votingDeadline;
    }

    /// @dev What getModel returns: the stored model with member indices resolved to addresses.
    struct ModelView {
        bytes32 modelHash;
        bytes32 metadataHash;
        address proposer;
        uint256 parentId;
        State state;
        uint16 eligible;
        uint16 rejections;
        address general;
        uint64 generalDeadline;
        uint64 votingDeadline;
        uint16 approvals;
    }

    uint16 private constant NO_MEMBER = type(uint16).max;

    // ---- storage --------------------------------------------------------------------------------
    // slot 0: admin, variant; slot 1: the global test set; slot 2: the acceptance policy; slot 3: everything
    // `submit` reads.
    address public admin;
    uint8 public variant;
    bytes32 public globalTestSetHash;
    /// @notice sha256 of the acceptance policy record every validator applies (stored in the vault).
    bytes32 public policyHash;
    uint64 public generalTimeout;
    uint64 public votingTimeout;
    uint48 public head;
    uint48 private count;

    mapping(uint256 => Model) private models;
    mapping(bytes32 => uint256) private idPlusOneByHash;
    mapping(address => Member) private members;
    address[] private memberList;
    address[] private validators; // active validators, unordered
    mapping(address => uint256) private validatorPosPlusOne;
    mapping(uint256 => mapping(uint256 => uint256)) private voteBits; // id => word => bits

    // ---- events ---------------------------------------------------------------------------------
    event MemberRegistered(address indexed account, uint8 roles, bytes32 encryptionKey, string name);
    event RolesChanged(address indexed account, uint8 roles, bool active);
    event EncryptionKeyChanged(address indexed account, bytes32 encryptionKey);
    event AdminTransferred(address indexed previousAdmin, address indexed newAdmin);
    event GlobalTestSetChanged(bytes32 hash);
    event PolicyChanged(bytes32 hash);
    event Submitted(
        uint256 indexed id,
        uint256 indexed parentId,
        address indexed proposer,
        address general,
        bytes32 modelHash,
        string uri,
        bytes32 metadataHash,
        uint16 eligible,
        uint64 generalDeadline
    );
    event GeneralReassigned(uint256 indexed id, address indexed previousGeneral, address indexed general,
                            uint64 generalDeadline);
    event CandidateOpened(uint256 indexed id, address indexed general, bytes32 reportHash, uint64 votingDeadline);
    event Voted(uint256 indexed id, address indexed validator, bool approve, int64 scoreGlobal, int64 scoreLocal,
                bytes32 evidenceHash);
    event Committed(uint256 indexed id, uint256 indexed parentId, bytes32 modelHash, uint16 approvals,
                    uint16 rejections);
    event Rejected(uint256 indexed id, uint8 reason, bytes32 evidenceHash);
    event Expired(uint256 indexed id);
    event Staled(uint256 indexed id);

    // ---- errors ---------------------------------------------------------------------------------
    error NotAdmin(address caller);
    error NotMember(address account);
    error NotValidator(address account);
    error NotGeneral(address caller, address general);
    error NotEligible(address validator, uint256 id);
    error AlreadyMember(address account);
    error InvalidRoles(uint8 roles);
    error InvalidVariant(uint8 variant);
    error InvalidTimeout();
    error ZeroAddress();
    error ZeroHash();
    error UnknownModel(uint256 id);
    error StaleParent(uint256 parentId, uint256 head);
    error DuplicateModel(bytes32 modelHash, uint256 existingId);
    error NoValidators();
    error NoOtherGeneral(uint256 id);
    error AlreadyVoted(address validator, uint256 id);
    error ProposerCannotVote(address proposer, uint256 id);
    error WrongState(uint256 id, State state);
    error DeadlinePassed(uint256 id, uint64 deadline);
    error DeadlineNotReached(uint256 id, uint64 deadline);
    error TooManyMembers();

    modifier onlyAdmin() {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        _;
    }

    constructor(
        uint8 variant_,
        bytes32 genesisHash,
        string memory genesisUri,
        bytes32 globalTestSetHash_,
        bytes32 policyHash_,
        uint64 generalTimeout_,
        uint64 votingTimeout_
    ) {
        if (variant_ < 1 || variant_ > 3) revert InvalidVariant(variant_);
        if (genesisHash == bytes32(0) || policyHash_ == bytes32(0)) revert ZeroHash();
        if (generalTimeout_ == 0 || votingTimeout_ == 0) revert InvalidTimeout();
        admin = msg.sender;
        variant = variant_;
        generalTimeout = generalTimeout_;
        votingTimeout = votingTimeout_;
        globalTestSetHash = globalTestSetHash_;
        policyHash = policyHash_;
        Model storage g = models[0];
        g.modelHash = genesisHash;
        g.proposer = NO_MEMBER;
        g.general = NO_MEMBER;
        g.state = State.Committed;
        count = 1;
        idPlusOneByHash[genesisHash] = 1;
        emit AdminTransferred(address(0), msg.sender);
        emit GlobalTestSetChanged(globalTestSetHash_);
        emit PolicyChanged(policyHash_);
        emit Submitted(0, 0, msg.sender, address(0), genesisHash, genesisUri, bytes32(0), 0, 0);
        emit Committed(0, 0, genesisHash, 0, 0);
    }

    // ---- membership (admin) ---------------------------------------------------------------------

    /// @notice Registers `account`, or re-activates a deactivated one with new roles, key and name.
    function registerMember(address account, uint8 roles, bytes32 encryptionKey, string calldata name)
        external
        onlyAdmin
    {
        if (account == address(0)) revert ZeroAddress();
        if (roles == 0 || roles > ALL_ROLES) revert InvalidRoles(roles);
        Member storage m = members[account];
        if (m.active) revert AlreadyMember(account);
        if (m.joinedAt == 0) {
            if (memberList.length >= NO_MEMBER) revert TooManyMembers();
            m.index = uint16(memberList.length);
            memberList.push(account);
        }
        m.joinedAt = uint40(block.timestamp);
        m.encryptionKey = encryptionKey;
        m.name = name;
        m.active = true;
        m.roles = 0;
        _applyRoles(account, m, roles);
        emit MemberRegistered(account, roles, encryptionKey, name);
    }

    function setRoles(address account, uint8 roles) external onlyAdmin {
        if (roles == 0 || roles > ALL_ROLES) revert InvalidRoles(roles);
        Member storage m = members[account];
        if (!m.active) revert NotMember(account);
        _applyRoles(account, m, roles);
        emit RolesChanged(account, roles, true);
    }

    function deactivateMember(address account) external onlyAdmin {
        Member storage m = members[account];
        if (!m.active) revert NotMember(account);
        _applyRoles(account, m, 0);
        m.active = false;
        emit RolesChanged(account, 0, false);
    }

    function transferAdmin(address newAdmin) external onlyAdmin {
        if (newAdmin == address(0)) revert ZeroAddress();
        emit AdminTransferred(admin, newAdmin);
        admin = newAdmin;
    }

    function setGlobalTestSet(bytes32 hash) external onlyAdmin {
        globalTestSetHash = hash;
        emit GlobalTestSetChanged(hash);
    }

    /// @notice Declares the acceptance policy every validator applies from now on: the sha256 of its record in
    ///         the vault. Admin-only for now; a later version moves it under a two-thirds vote of the members.
    function setPolicy(bytes32 hash) external onlyAdmin {
        if (hash == bytes32(0)) revert ZeroHash();
        policyHash = hash;
        emit PolicyChanged(hash);
    }

    /// @notice A member rotates its own X25519 encryption key.
    function setEncryptionKey(bytes32 encryptionKey) external {
        Member storage m = members[msg.sender];
        if (!m.active) revert NotMember(msg.sender);
        m.encryptionKey = encryptionKey;
        emit EncryptionKeyChanged(msg.sender, encryptionKey);
    }

    // ---- the round --------------------------------------------------------------------------------

    function submit(uint256 parentId, bytes32 modelHash, string calldata uri, bytes32 metadataHash)
        external
        returns (uint256 id)
    {
        Member storage m = members[msg.sender];
        if (!m.active || m.roles & MEMBER == 0) revert NotMember(msg.sender);
        if (parentId != head) revert StaleParent(parentId, head);
        if (modelHash == bytes32(0) || metadataHash == bytes32(0)) revert ZeroHash();
        uint256 existing = idPlusOneByHash[modelHash];
        if (existing != 0) revert DuplicateModel(modelHash, existing - 1);
        uint256 eligible = validators.length;
        if (validatorPosPlusOne[msg.sender] != 0) eligible -= 1;
        if (eligible == 0) revert NoValidators();

        id = count;
        address general = _drawFirst(id, msg.sender, eligible);
        uint40 deadline = uint40(block.timestamp + generalTimeout);
        count = uint48(id + 1);
        Model storage c = models[id];
        c.modelHash = modelHash;
        c.metadataHash = metadataHash;
        c.parentId = uint48(parentId);
        c.proposer = m.index;
        c.general = members[general].index;
        c.state = State.Submitted;
        c.eligible = uint16(eligible);
        c.generalDeadline = deadline;
        idPlusOneByHash[modelHash] = id + 1;
        emit Submitted(id, parentId, msg.sender, general, modelHash, uri, metadataHash, uint16(eligible), deadline);
    }

    /// @notice The general reports the integrity check: ok opens voting, not ok rejects the candidate.
    function openCandidate(uint256 id, bool integrityOk, bytes32 reportHash) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        if (c.state != State.Submitted) revert WrongState(id, c.state);
        Member storage m = members[msg.sender];
        if (!m.active || m.index != c.general) revert NotGeneral(msg.sender, memberList[c.general]);
        if (block.timestamp > c.generalDeadline) revert DeadlinePassed(id, c.generalDeadline);
        if (reportHash == bytes32(0)) revert ZeroHash();
        if (!integrityOk) {
            c.state = State.Rejected;
            emit Rejected(id, REJECT_INTEGRITY, reportHash);
            return;
        }
        uint40 deadline = uint40(block.timestamp + votingTimeout);
        c.state = State.Open;
        c.votingDeadline = deadline;
        emit CandidateOpened(id, msg.sender, reportHash, deadline);
    }

    /// @notice After a silent general's deadline, anyone may draw a new one (never the same account).
    function reassignGeneral(uint256 id) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        if (c.state != State.Submitted) revert WrongState(id, c.state);
        if (block.timestamp <= c.generalDeadline) revert DeadlineNotReached(id, c.generalDeadline);
        address previous = memberList[c.general];
        address general = _drawNext(id, memberList[c.proposer], previous);
        if (general == address(0)) revert NoOtherGeneral(id);
        uint40 deadline = uint40(block.timestamp + generalTimeout);
        c.general = members[general].index;
        c.generalDeadline = deadline;
        emit GeneralReassigned(id, previous, general, deadline);
    }

    function vote(uint256 id, bool approve, int64 scoreGlobal, int64 scoreLocal, bytes32 evidenceHash) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        if (c.state != State.Open) revert WrongState(id, c.state);
        if (block.timestamp > c.votingDeadline) revert DeadlinePassed(id, c.votingDeadline);
        Member storage m = members[msg.sender];
        if (!m.active || m.roles & VALIDATOR == 0) revert NotValidator(msg.sender);
        if (m.index == c.proposer) revert ProposerCannotVote(msg.sender, id);
        if (m.validatorSince > id) revert NotEligible(msg.sender, id);
        uint256 word = m.index >> 8;
        uint256 bit = uint256(1) << (m.index & 255);
        uint256 bits = voteBits[id][word];
        if (bits & bit != 0) revert AlreadyVoted(msg.sender, id);
        voteBits[id][word] = bits | bit;
        emit Voted(id, msg.sender, approve, scoreGlobal, scoreLocal, evidenceHash);
        uint256 eligible = c.eligible;
        if (approve) {
            uint16 approvals = c.approvals + 1;
            c.approvals = approvals;
            if (uint256(approvals) * 3 >= eligible * 2) {
                c.state = State.Committed;
                head = uint48(id);
                emit Committed(id, c.parentId, c.modelHash, approvals, c.rejections);
            }
        } else {
            uint16 rejections = c.rejections + 1;
            c.rejections = rejections;
            if (uint256(rejections) * 3 > eligible) {
                c.state = State.Rejected;
                emit Rejected(id, REJECT_VOTES, bytes32(0));
            }
        }
    }

    /// @notice Anyone may expire a candidate whose current deadline (general's or voting) has passed.
    function expire(uint256 id) external {
        Model storage c = _live(id);
        if (c.state == State.Stale) return;
        uint64 deadline;
        if (c.state == State.Submitted) deadline = c.generalDeadline;
        else if (c.state == State.Open) deadline = c.votingDeadline;
        else revert WrongState(id, c.state);
        if (block.timestamp <= deadline) revert DeadlineNotReached(id, deadline);
        c.state = State.Expired;
        emit Expired(id);
    }

    /// @notice Marks a pending candidate whose parent is no longer head as Stale (anyone may call).
    function markStale(uint256 id) external {
        Model storage c = _live(id);
        if (c.state != State.Stale) revert WrongState(id, c.state);
    }

    // ---- views ------------------------------------------------------------------------------------

    function modelCount() external view returns (uint256) {
        return count;
    }

    function getModel(uint256 id) external view returns (ModelView memory v) {
        if (id >= count) revert UnknownModel(id);
        Model storage c = models[id];
        v.modelHash = c.modelHash;
        v.metadataHash = c.metadataHash;
        v.proposer = _addressOf(c.proposer);
        v.parentId = c.parentId;
        v.state = c.state;
        v.eligible = c.eligible;
        v.rejections = c.rejections;
        v.general = _addressOf(c.general);
        v.generalDeadline = c.generalDeadline;
        v.votingDeadline = c.votingDeadline;
        v.approvals = c.approvals;
    }

    function modelIdOf(bytes32 modelHash) external view returns (uint256) {
        uint256 idPlusOne = idPlusOneByHash[modelHash];
        if (idPlusOne == 0) revert UnknownModel(type(uint256).max);
        return idPlusOne - 1;
    }

    function getMember(address account) external view returns (Member memory) {
        return members[account];
    }

    function memberCount() external view returns (uint256) {
        return memberList.length;
    }

    function memberAt(uint256 index) external view returns (address) {
        return memberList[index];
    }

    function validatorCount() external view returns (uint256) {
        return validators.length;
    }

    function hasVoted(uint256 id, address validator) external view returns (bool) {
        uint16 index = members[validator].index;
        if (members[validator].joinedAt == 0) return false;
        return voteBits[id][index >> 8] & (uint256(1) << (index & 255)) != 0;
    }

    // ---- internals --------------------------------------------------------------------------------

    /// @dev Loads a candidate; if it is pending on a parent that is no longer head, marks it Stale.
    function _live(uint256 id) private returns (Model storage c) {
        if (id >= count) revert UnknownModel(id);
        c = models[id];
        if ((c.state == State.Submitted || c.state == State.Open) && c.parentId != head) {
            c.state = State.Stale;
            emit Staled(id);
        }
    }

    function _applyRoles(address account, Member storage m, uint8 roles) private {
        bool was = m.roles & VALIDATOR != 0;
        bool becomes = roles & VALIDATOR != 0;
        if (becomes && !was) {
            validators.push(account);
            validatorPosPlusOne[account] = validators.length;
            m.validatorSince = count;
        } else if (was && !becomes) {
            uint256 pos = validatorPosPlusOne[account] - 1;
            address last = validators[validators.length - 1];
            validators[pos] = last;
            validatorPosPlusOne[last] = pos + 1;
            validators.pop();
            delete validatorPosPlusOne[account];
        }
        m.roles = roles;
    }

    function _addressOf(uint16 index) private view returns (address) {
        return index == NO_MEMBER ? address(0) : memberList[index];
    }

    function _seed(uint256 id, address previous) private view returns (uint256) {
        return uint256(keccak256(abi.encodePacked(block.prevrandao, blockhash(block.number - 1), id, previous)));
    }

    /// @dev The first general: `seed mod eligible` over the active validators with the proposer's slot
    ///      skipped, so every eligible validator is equally likely. Every active validator is eligible
    ///      for a new id (validatorSince <= count).
    function _drawFirst(uint256 id, address proposer, uint256 eligible) private view returns (address) {
        uint256 r = _seed(id, address(0)) % eligible;
        uint256 proposerPos = validatorPosPlusOne[proposer];
        if (proposerPos != 0 && r >= proposerPos - 1) r += 1;
        return validators[r];
    }

    /// @dev A new general after a silent one: from a random position, the next active validator that was
    ///      eligible for `id` and is neither the proposer nor the previous general; address(0) if none.
    ///      The walk is bounded by the validator count and runs only in reassignGeneral, never in vote.
    function _drawNext(uint256 id, address proposer, address previous) private view returns (address) {
        uint256 n = validators.length;
        if (n == 0) return address(0);
        uint256 start = _seed(id, previous) % n;
        for (uint256 k = 0; k < n; ++k) {
            address candidate = validators[(start + k) % n];
            if (candidate != proposer && candidate != previous && members[candidate].validatorSince <= id) {
                return candidate;
            }
        }
        return address(0);
    }
}
